/**
 * Signing in and what emailed links lead to: the sign-in form, password recovery, the confirm page
 * every emailed link lands on (a click spends the link, so mail scanners don't), and accepting an
 * invitation. The console server holds the session; these pages only ever see who is signed in.
 */
import { useState, type FormEvent } from "react";
import { Link, useNavigate, useSearchParams } from "react-router";
import { auth, type Me } from "./session.ts";
import { supabase } from "./supabase.ts";
import { describe, field, Notice, useAction, useLoad, when } from "./ui.tsx";

/** The sign-in form; `ended` says why the last session ended, if it did. */
export function SignIn({ ended, onSignedIn }: { ended: string | null; onSignedIn: (me: Me) => void }) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    setBusy(true);
    try {
      onSignedIn(await auth.signIn(field(form, "email"), String(form.get("password") ?? "")));
    } catch (e) {
      setError(describe(e));
    } finally {
      setBusy(false);
    }
  }

  return (
    <main className="narrow">
      <h1>Sign in to Gatehouse</h1>
      {ended && <p role="status" className="notice">{ended}</p>}
      {error && <p role="alert" className="error">{error}</p>}
      <form onSubmit={submit} className="stack">
        <label>
          Email <input name="email" type="email" autoComplete="username" required />
        </label>
        <label>
          Password <input name="password" type="password" autoComplete="current-password" required />
        </label>
        <button type="submit" disabled={busy}>Sign in</button>
      </form>
      <p><Link to="/forgot">Forgot your password?</Link></p>
    </main>
  );
}

/** Asks for a recovery email (the answer is the same whether or not the address has an account). */
export function ForgotPassword() {
  const action = useAction();
  return (
    <main className="narrow">
      <h1>Reset your password</h1>
      <Notice notice={action.notice} />
      <form
        className="stack"
        onSubmit={(event) => {
          event.preventDefault();
          const email = field(new FormData(event.currentTarget), "email");
          void action.run(async () => {
            await auth.recover(email);
            return "If that address has an account, a recovery link is on its way.";
          });
        }}
      >
        <label>
          Email <input name="email" type="email" autoComplete="username" required />
        </label>
        <button type="submit" disabled={action.busy}>Send the recovery link</button>
      </form>
      <p><Link to="/">Back to sign-in</Link></p>
    </main>
  );
}

const LINK_PURPOSE: Record<string, string> = {
  invite: "accept your invitation",
  recovery: "choose a new password",
  magiclink: "sign in",
  signup: "confirm your email",
  email: "confirm your email",
};

/** Only the console's own paths may be a link's destination. */
function safeNext(next: string | null): string {
  if (!next) return "/";
  try {
    const url = new URL(next, location.origin);
    return url.origin === location.origin ? `${url.pathname}${url.search}` : "/";
  } catch {
    return "/";
  }
}

/** Where every emailed link lands: one click spends it and signs you in, then on to its page. */
export function Confirm({ onSignedIn }: { onSignedIn: (me: Me) => void }) {
  const [params] = useSearchParams();
  const navigate = useNavigate();
  const [error, setError] = useState<string | null>(null);
  const tokenHash = params.get("token_hash") ?? "";
  const type = params.get("type") ?? "";
  const next = type === "recovery" ? "/account?recovered=1" : safeNext(params.get("next"));

  async function go() {
    try {
      const me = await auth.confirm(tokenHash, type);
      onSignedIn(me);
      navigate(next, { replace: true });
    } catch (e) {
      setError(describe(e));
    }
  }

  if (!tokenHash || !LINK_PURPOSE[type]) {
    return (
      <main className="narrow">
        <h1>This link is incomplete</h1>
        <p role="alert" className="error">Open the link from your email again, or ask for a new one.</p>
        <p><Link to="/">Back to sign-in</Link></p>
      </main>
    );
  }
  return (
    <main className="narrow">
      <h1>Continue to {LINK_PURPOSE[type]}</h1>
      {error && <p role="alert" className="error">{error}</p>}
      <p>This link signs you in once. Continue only if you asked for it.</p>
      <button type="button" onClick={go}>Continue</button>
    </main>
  );
}

/** /invitations/accept?token=…: joins the organization the invitation is for. */
const ROLE_LABELS: Record<string, string> = {
  tenant_admin: "Tenant admin", project_admin: "Project admin", project_contributor: "Contributor", project_viewer: "Viewer",
};

export function AcceptInvitation() {
  const [params] = useSearchParams();
  const navigate = useNavigate();
  const token = params.get("token") ?? "";
  const wellFormed = /^[0-9a-f]{64}$/.test(token);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  // What the invitation is, for the person it is addressed to: the organization, who invited, the role.
  const preview = useLoad(async () => {
    if (!wellFormed) return null;
    const { data, error } = await supabase().rpc("invitation_preview", { p_token: token });
    if (error) throw error;
    return data as { organization: string; role: string; invited_by: string | null; expires_at: string };
  }, [token]);

  async function accept() {
    setBusy(true);
    const { data, error } = await supabase().rpc("accept_invitation", { p_token: token });
    setBusy(false);
    if (error) return setError(describe(error));
    navigate(`/o/${data}/approvals`, { replace: true });
  }

  const p = preview.data;
  return (
    <div className="narrow">
      <h1>Accept your invitation</h1>
      {!wellFormed ? (
        <p role="alert" className="error">This invitation link is incomplete; open it from your email again.</p>
      ) : (
        <>
          {error && <p role="alert" className="error">{error}</p>}
          {preview.error && <p role="alert" className="error">{preview.error}</p>}
          {p ? (
            <p>
              {p.invited_by ?? "A tenant admin"} invited you to join <strong>{p.organization}</strong> as{" "}
              <strong>{ROLE_LABELS[p.role] ?? p.role}</strong>. The invitation is open until {when(p.expires_at)}.
            </p>
          ) : !preview.error && <p className="muted" aria-busy="true">Loading the invitation…</p>}
          <button type="button" onClick={accept} disabled={busy || !p}>Accept the invitation</button>
          <p className="muted">New here? Choose a password on <Link to="/account">your account page</Link> afterwards.</p>
        </>
      )}
    </div>
  );
}
