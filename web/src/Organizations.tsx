/** Your organizations: switch to one, or create one (you become its tenant admin). */
import { Link, useNavigate } from "react-router";
import { supabase } from "./supabase.ts";
import { field, Notice, States, unwrap, useAction, useLoad } from "./ui.tsx";

export function Organizations() {
  const navigate = useNavigate();
  const orgs = useLoad(() => unwrap(supabase().from("organizations").select("id, name, slug, created_at").order("name")), []);
  const action = useAction(orgs.reload);

  return (
    <>
      <h1>Your organizations</h1>
      <Notice notice={action.notice} />
      <States loaded={orgs} empty="You belong to no organization yet: create one, or accept an invitation from your email.">
        {(list) => (
          <ul aria-label="Organizations">
            {list.map((o) => (
              <li key={o.id}>
                <Link to={`/o/${o.id}/approvals`}>{o.name}</Link> <code>{o.slug}</code>
              </li>
            ))}
          </ul>
        )}
      </States>
      <section aria-labelledby="create-org">
        <h2 id="create-org">Create an organization</h2>
        <form className="stack" onSubmit={(e) => {
          e.preventDefault();
          const form = new FormData(e.currentTarget);
          void action.run(async () => {
            const id = await unwrap(supabase().rpc("create_organization", { p_name: field(form, "name"), p_slug: field(form, "slug") }));
            navigate(`/o/${id}/projects`);
            return "Organization created.";
          });
        }}>
          <label>Name <input name="name" required maxLength={100} /></label>
          <label>Slug <input name="slug" required pattern="[a-z0-9][a-z0-9-]*[a-z0-9]" title="lowercase letters, digits and dashes" maxLength={48} /></label>
          <button type="submit" disabled={action.busy}>Create organization</button>
        </form>
      </section>
    </>
  );
}
