/** The organization's projects: list, create and rename (tenant admins), with their agents' count. */
import { supabase } from "./supabase.ts";
import { field, Notice, States, unwrap, useAction, useLoad, useOrg, when } from "./ui.tsx";

export function Projects() {
  const org = useOrg();
  const projects = useLoad(
    () => unwrap(supabase().from("projects").select("id, name, slug, created_at, agents(count)").order("name").setHeader("x-org-id", org.id)),
    [org.id],
  );
  const action = useAction(projects.reload);

  return (
    <>
      <h1>Projects in {org.name}</h1>
      <Notice notice={action.notice} />
      <States loaded={projects} empty="No projects yet.">
        {(list) => (
          <table>
            <thead>
              <tr><th scope="col">Name</th><th scope="col">Slug</th><th scope="col">Agents</th><th scope="col">Created</th></tr>
            </thead>
            <tbody>
              {list.map((p) => (
                <tr key={p.id}>
                  <td>{p.name}</td>
                  <td><code>{p.slug}</code></td>
                  <td>{(p.agents as unknown as { count: number }[])[0]?.count ?? 0}</td>
                  <td>{when(p.created_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </States>
      {org.isAdmin && (
        <section aria-labelledby="new-project">
          <h2 id="new-project">New project</h2>
          <form className="stack" onSubmit={(e) => {
            e.preventDefault();
            const form = new FormData(e.currentTarget);
            void action.run(async () => {
              await unwrap(supabase().from("projects").insert({ org_id: org.id, name: field(form, "name"), slug: field(form, "slug") }).select("id").setHeader("x-org-id", org.id));
              return "Project created.";
            });
          }}>
            <label>Project name <input name="name" required maxLength={100} /></label>
            <label>Project slug <input name="slug" required pattern="[a-z0-9][a-z0-9-]*[a-z0-9]" title="lowercase letters, digits and dashes" maxLength={48} /></label>
            <button type="submit" disabled={action.busy}>Create project</button>
          </form>
        </section>
      )}
    </>
  );
}
