/**
 * A personal access token whose checksum fails is refused without a database query
 * (functions/_shared/pat/exchange.ts). How this test knows: the functions' database is an address
 * where nothing listens, so any query fails with a connection error. A made-up token gets its 401
 * token_invalid all the same (no query was tried); a well-formed token of the right checksum gets
 * the connection error (its lookup was tried), which shows the test would catch a lookup.
 *
 * Run with the other Deno tests (npm test; see egress.test.mts for the command).
 */
import assert from "node:assert/strict";
import { exchangeToken } from "../../functions/_shared/pat/exchange.ts";
import { HttpError } from "../../functions/_shared/http/errors.ts";
import { base62, patChecksum } from "../../functions/_shared/pat/token.ts";

// Port 9 (discard) on loopback: nothing listens, so connecting fails at once.
Deno.env.set("SUPABASE_DB_URL", "postgresql://nobody:nothing@127.0.0.1:9/postgres"); // secretlint-disable-line -- an unreachable database, no credential

const body = "0123456789ABCDEFGHIJabcdefghij";
const wellFormed = `gtp_${body}${patChecksum(body)}`;

Deno.test("a token whose checksum fails is refused with no database query", async () => {
  for (const token of [`gtp_${body}${base62(0, 6)}`, wellFormed.slice(0, -1) + (wellFormed.endsWith("a") ? "b" : "a"), "gtp_short", "ghp_" + wellFormed.slice(4)]) {
    const refusal = await exchangeToken(token).then(() => null, (e) => e);
    assert.ok(refusal instanceof HttpError, `${token}: refused before the database`);
    assert.equal(refusal.status, 401);
    assert.equal(refusal.code, "token_invalid");
  }
});

Deno.test("a token whose checksum holds is looked up (the database is unreachable here, so the lookup fails)", async () => {
  const failure = await exchangeToken(wellFormed).then(() => null, (e) => e);
  assert.ok(failure !== null && !(failure instanceof HttpError), "the lookup was tried and met the unreachable database");
  assert.match(String((failure as { code?: string }).code ?? failure), /ECONNREFUSED|connect/i);
});
