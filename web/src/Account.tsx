/**
 * Your own account: this session (when it started, when it ends), signing out elsewhere, your
 * password, and your second factors — enrol an authenticator app (TOTP), and step up this session
 * to aal2 with it, which deciding high- and critical-risk actions needs (the database checks).
 */
import { useState } from "react";
import { useNavigate, useSearchParams } from "react-router";
import type { SessionProps } from "./App.tsx";
import { auth, loadMe } from "./session.ts";
import { field, Notice, useAction, when } from "./ui.tsx";

export function Account({ me, setMe }: SessionProps) {
  const [params] = useSearchParams();
  const navigate = useNavigate();
  const next = params.get("next");
  const action = useAction();
  const [enrolling, setEnrolling] = useState<{ id: string; qr_code: string; secret: string } | null>(null);
  const verified = me.factors.filter((f) => f.status === "verified");

  function stepUp(factorId: string, code: string, done: string) {
    void action.run(async () => {
      setMe(await auth.verify(factorId, code));
      setEnrolling(null);
      if (next?.startsWith("/") && !next.startsWith("//")) navigate(next);
      return done;
    });
  }

  return (
    <>
      <h1>Your account</h1>
      <Notice notice={action.notice} />
      {params.get("recovered") && <p role="status" className="notice">You are signed in through your recovery link: choose a new password below.</p>}

      <section aria-labelledby="session-heading">
        <h2 id="session-heading">This session</h2>
        <dl className="facts">
          <dt>Signed in as</dt>
          <dd>{me.user.email}</dd>
          <dt>Since</dt>
          <dd>{when(me.session.started_at)}</dd>
          <dt>Ends at the latest</dt>
          <dd>{me.session.absolute_deadline ? when(me.session.absolute_deadline) : "no limit"}</dd>
          <dt>Ends when idle for</dt>
          <dd>{me.session.idle_timeout_seconds ? `${Math.round(me.session.idle_timeout_seconds / 60)} minutes` : "no limit"}</dd>
          <dt>Assurance</dt>
          <dd>{me.aal === "aal2" ? "second factor verified (aal2)" : "password only (aal1)"}</dd>
        </dl>
        <button type="button" onClick={() => void action.run(async () => (await auth.signOut("others"), "Your other sessions are signed out."))}>
          Sign out my other sessions
        </button>{" "}
        <button type="button" onClick={() => void action.run(async () => (await auth.signOut("global"), setMe(null), "Signed out everywhere."))}>
          Sign out everywhere
        </button>
      </section>

      <section aria-labelledby="mfa-heading">
        <h2 id="mfa-heading">Two-factor authentication</h2>
        {next && me.aal !== "aal2" && (
          <p role="status" className="notice">Verify your second factor to continue: the action you were deciding needs it.</p>
        )}
        {verified.length === 0 && !enrolling && <p className="muted">No authenticator yet. Deciding high-risk actions needs one.</p>}
        <ul>
          {verified.map((f) => (
            <li key={f.id}>
              {f.friendly_name || "Authenticator"} <small className="muted">added {when(f.created_at)}</small>{" "}
              <button type="button" onClick={() => void action.run(async () => {
                await auth.unenroll(f.id);
                setMe(await loadMe());
                return "Removed.";
              })} disabled={me.aal !== "aal2"} title={me.aal !== "aal2" ? "Verify it first: removing a factor needs aal2" : undefined}>
                Remove {f.friendly_name || "authenticator"}
              </button>
            </li>
          ))}
        </ul>
        {verified.length > 0 && me.aal !== "aal2" && (
          <form className="stack" onSubmit={(e) => {
            e.preventDefault();
            stepUp(verified[0].id, field(new FormData(e.currentTarget), "code"), "Second factor verified: this session is at aal2.");
          }}>
            <label>
              Code from your authenticator app <input name="code" inputMode="numeric" pattern="\d{6}" autoComplete="one-time-code" required />
            </label>
            <button type="submit" disabled={action.busy}>Verify</button>
          </form>
        )}
        {enrolling ? (
          <form className="stack" onSubmit={(e) => {
            e.preventDefault();
            stepUp(enrolling.id, field(new FormData(e.currentTarget), "code"), "Authenticator added; this session is at aal2.");
          }}>
            <p>Scan this code with your authenticator app, or type the secret into it, then enter the six-digit code it shows.</p>
            <img src={enrolling.qr_code} alt="QR code of the authenticator secret" width={180} height={180} />
            <p>Secret: <code aria-label="Authenticator secret">{enrolling.secret}</code></p>
            <label>
              Six-digit code <input name="code" inputMode="numeric" pattern="\d{6}" autoComplete="one-time-code" required />
            </label>
            <button type="submit" disabled={action.busy}>Activate</button>
          </form>
        ) : (
          <form className="stack" onSubmit={(e) => {
            e.preventDefault();
            const name = field(new FormData(e.currentTarget), "name");
            void action.run(async () => {
              const factor = await auth.enroll(name);
              setEnrolling(factor);
              return "Scan the code, then enter the six digits your app shows.";
            });
          }}>
            <label>
              Authenticator name <input name="name" defaultValue="Authenticator app" maxLength={64} required />
            </label>
            <button type="submit" disabled={action.busy}>Add an authenticator</button>
          </form>
        )}
      </section>

      <section aria-labelledby="password-heading">
        <h2 id="password-heading">Password</h2>
        <form className="stack" onSubmit={(e) => {
          e.preventDefault();
          const form = e.currentTarget;
          const password = String(new FormData(form).get("password") ?? "");
          void action.run(async () => {
            await auth.setPassword(password);
            form.reset();
            return "Password changed.";
          });
        }}>
          <label>
            New password <input name="password" type="password" autoComplete="new-password" minLength={8} maxLength={72} required />
          </label>
          <button type="submit" disabled={action.busy}>Change password</button>
        </form>
      </section>
    </>
  );
}
