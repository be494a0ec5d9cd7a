/**
 * Signing audit checkpoints. The database states the chain (audit.checkpoint_body: size, head hash,
 * RFC 6962 root, time) and checks what it is asked to store (audit.store_checkpoint); the Ed25519
 * signature is made here with Web Crypto, because Postgres has no Ed25519. The private key lives
 * in Vault and is created on first use; its public half is published by audit_signing_keys().
 */
import type { Tx } from "../http/db.ts";
import { base64Bytes, checkpointMessage, type SignedCheckpoint } from "./verify.ts";

function base64(bytes: ArrayBuffer | Uint8Array): string {
  return btoa(String.fromCharCode(...new Uint8Array(bytes)));
}

async function keyIdOf(publicKey: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", publicKey));
  return Array.from(digest.slice(0, 8), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The active signing key, created (and its private half put in Vault) if there is none. */
async function activeKey(tx: Tx): Promise<{ keyId: string; privateKey: CryptoKey }> {
  const current = () => tx`select key_id, secret_id from audit.signing_keys where retired_at is null`;
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
      values (${keyId}, ${publicKey}, ${id}) returning key_id, secret_id`;
  }
  const [{ secret }] = await tx`select decrypted_secret as secret from vault.decrypted_secrets where id = ${key.secret_id}`;
  const pkcs8 = base64Bytes(secret);
  if (!pkcs8) throw new Error("the audit signing key in Vault is not base64");
  const privateKey = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, false, ["sign"]);
  return { keyId: key.key_id, privateKey };
}

/**
 * Signs and stores a checkpoint of `orgId`'s chain at `size` (default: its current size), inside
 * `tx`, which runs as the service role (http/db.ts: asService). Returns the stored checkpoint,
 * which is an earlier one when that size was already signed.
 */
export async function signCheckpoint(tx: Tx, orgId: string, options: { size?: number } = {}): Promise<SignedCheckpoint> {
  const { keyId, privateKey } = await activeKey(tx);
  const [{ body }] = await tx`select audit.checkpoint_body(${orgId}, ${keyId}, ${options.size ?? null}) as body`;
  const signature = new Uint8Array(await crypto.subtle.sign("Ed25519", privateKey, checkpointMessage(body)));
  const [stored] = await tx`
    -- One line of base64 (encode breaks its output every 76 characters).
    select c.body, translate(encode(c.signature, 'base64'), chr(10), '') as signature, c.key_id,
           translate(encode(k.public_key, 'base64'), chr(10), '') as public_key
      from audit.store_checkpoint(${body}, ${signature}) c
      join audit.signing_keys k on k.key_id = c.key_id`;
  return { checkpoint: stored.body, signature: stored.signature, key_id: stored.key_id, public_key: stored.public_key };
}
