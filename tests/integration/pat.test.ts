/**
 * Personal access tokens through the API (issue 26, the database's half): a member makes one with
 * supabase-js and gets it once, in the format whose checksum functions/_shared/pat/token.ts checks
 * without a lookup; the table shows its prefix, never its hash; its owner revokes it. (Using a
 * token to call the API is the next step of the issue.)
 */
import { afterAll, describe, expect, it } from "vitest";
import { patFormatValid } from "../../functions/_shared/pat/token.ts";
import { ACME } from "../helpers/fixtures.ts";
import { signedIn, superuser } from "../helpers/stack.ts";

const sql = superuser();
afterAll(() => sql.end());

describe("personal access tokens", () => {
  it("are made once, in a format the functions check without a lookup, stored as a hash, and revoked by their owner", async () => {
    const casey = await signedIn("casey@both.test");
    const made = await casey.rpc("create_personal_access_token", { p_name: "Nightly runs", p_scopes: ["runs:write", "runs:read"], p_expires_in_days: 7 })
      .setHeader("x-org-id", ACME);
    expect(made.error).toBeNull();
    const { token, id, token_prefix } = made.data as { token: string; id: string; token_prefix: string };
    expect(patFormatValid(token)).toBe(true);
    expect(token.startsWith(token_prefix)).toBe(true);
    // One character off: the checksum fails, whichever it is.
    expect(patFormatValid(token.slice(0, -1) + (token.endsWith("a") ? "b" : "a"))).toBe(false);

    const columns = "id, name, token_prefix, scopes, expires_at, created_at, last_used_at, revoked_at, revoked_reason";
    const listed = await casey.from("personal_access_tokens").select(columns).eq("id", id).setHeader("x-org-id", ACME);
    expect(listed.error).toBeNull();
    expect(listed.data).toHaveLength(1);
    expect(JSON.stringify(listed.data)).not.toContain(token.slice(8));
    // The hash is no column anyone may read (as with widget keys: select the columns, not *).
    const hash = await casey.from("personal_access_tokens").select("token_sha256").setHeader("x-org-id", ACME);
    expect(hash.error?.code).toBe("42501");
    const [stored] = await sql`select token_sha256 = encode(sha256(convert_to(${token}, 'UTF8')), 'hex') as hashed from public.personal_access_tokens where id = ${id}`;
    expect(stored.hashed).toBe(true);

    const revoked = await casey.rpc("revoke_personal_access_token", { p_token_id: id }).setHeader("x-org-id", ACME);
    expect((revoked.data as { revoked_reason: string }).revoked_reason).toBe("revoked");
    const again = await casey.rpc("revoke_personal_access_token", { p_token_id: id }).setHeader("x-org-id", ACME);
    expect(again.error?.code).toBe("token_not_found");
    await casey.auth.signOut();
  });
});
