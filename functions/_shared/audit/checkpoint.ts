/**
 * Signing audit checkpoints. The database states the chain (audit.checkpoint_body: size, head hash,
 * RFC 6962 root, time) and checks what it is asked to store (audit.store_checkpoint); the Ed25519
 * signatures are made here with Web Crypto, because Postgres has no Ed25519. The private key lives
 * in Vault and is created on first use; its public half is published by audit_signing_keys().
 *
 * Each checkpoint is signed twice with that key, in two formats: the RFC 8785 body (format 1,
 * "gatehouse.audit.checkpoint.v1\n" || body), and the C2SP tlog-checkpoint signed note of the same
 * tree (note.ts), whose origin, and key name, is GATEHOUSE_AUDIT_ORIGIN/<organization id>.
 */
import type { Tx } from "../http/db.ts";
import { refuse } from "../http/errors.ts";
import { checkpointText, signNote, validKeyName } from "./note.ts";
import { bytesOfHex } from "./merkle.ts";
import { base64Bytes, checkpointMessage, parseCheckpoint, type SignedCheckpoint } from "./verify.ts";

/** Where the organizations' logs are named: GATEHOUSE_AUDIT_ORIGIN (a schema-less URL), default gatehouse.local/audit. */
export function auditOrigin(orgId: string, get: (name: string) => string | undefined = (n) => Deno.env.get(n)): string {
  const prefix = (get("GATEHOUSE_AUDIT_ORIGIN") ?? "gatehouse.local/audit").replace(/\/+$/, "");
  const origin = `${prefix}/${orgId}`;
  if (!validKeyName(origin)) throw new Error("GATEHOUSE_AUDIT_ORIGIN must be a schema-less URL without spaces or '+'");
  return origin;
}

function base64(bytes: ArrayBuffer | Uint8Array): string {
  return btoa(String.fromCharCode(...new Uint8Array(bytes)));
}

async function keyIdOf(publicKey: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", publicKey));
  return Array.from(digest.slice(0, 8), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The active signing key, created (and its private half put in Vault) if there is none. */
async function activeKey(tx: Tx): Promise<{ keyId: string; privateKey: CryptoKey; publicKey: Uint8Array }> {
  const current = () => tx`select key_id, secret_id, public_key from audit.signing_keys where retired_at is null`;
  let [key] = await current();
  if (!key) {
    // Only a creator locks (until its transaction ends), so signers never queue behind each other;
    // a second creator waits, then finds the key the first one made.
    await tx`select pg_advisory_xact_lock(hashtext('audit.signing_keys'))`;
    [key] = await current();
  }
  if (!key) {
    const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]) as CryptoKeyPair;
    const publicKey = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
    const pkcs8 = base64(await crypto.subtle.exportKey("pkcs8", pair.privateKey));
    const keyId = await keyIdOf(publicKey);
    const [{ id }] = await tx`select vault.create_secret(${pkcs8}, ${`audit-signing-key-${keyId}`}, 'Ed25519 key that signs audit checkpoints') as id`;
    [key] = await tx`
      insert into audit.signing_keys (key_id, public_key, secret_id)
      values (${keyId}, ${publicKey}, ${id}) returning key_id, secret_id, public_key`;
  }
  const [vaulted] = await tx`select decrypted_secret as secret from vault.decrypted_secrets where id = ${key.secret_id}`;
  const pkcs8 = vaulted ? base64Bytes(vaulted.secret) : null;
  // The operator's to mend (retire the key, and a new one is made): nothing is signed meanwhile.
  if (!pkcs8) throw refuse("audit_signing_key_unavailable");
  const privateKey = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, false, ["sign"]);
  return { keyId: key.key_id, privateKey, publicKey: new Uint8Array(key.public_key) };
}

/**
 * Signs and stores a checkpoint of `orgId`'s chain at `size` (default: its current size), inside
 * `tx`, which runs as the service role (http/db.ts: asService). Returns the stored checkpoint,
 * which is an earlier one when that size was already signed.
 */
export async function signCheckpoint(tx: Tx, orgId: string, options: { size?: number } = {}): Promise<SignedCheckpoint> {
  const { keyId, privateKey, publicKey } = await activeKey(tx);
  const [{ body }] = await tx`select audit.checkpoint_body(${orgId}, ${keyId}, ${options.size ?? null}) as body`;
  const signature = new Uint8Array(await crypto.subtle.sign("Ed25519", privateKey, checkpointMessage(body)));
  const stated = parseCheckpoint(body)!;
  const origin = auditOrigin(orgId);
  const note = await signNote(checkpointText({ origin, size: stated.size, root: bytesOfHex(stated.root)! }), origin, privateKey, publicKey);
  const [stored] = await tx`
    -- One line of base64 (encode breaks its output every 76 characters).
    select c.body, translate(encode(c.signature, 'base64'), chr(10), '') as signature, c.key_id,
           translate(encode(k.public_key, 'base64'), chr(10), '') as public_key, audit.note_of(c.note, c.org_id, c.size) as note
      from audit.store_checkpoint(${body}, ${signature}, ${note}) c
      join audit.signing_keys k on k.key_id = c.key_id`;
  return {
    checkpoint: stored.body, signature: stored.signature, key_id: stored.key_id, public_key: stored.public_key,
    ...(stored.note ? { note: stored.note } : {}),
  };
}
