/**
 * Builds what the gateway serves from web/dist: the admin client (web/vite.config.ts, which
 * empties the folder), the widget embed (web/widget/vite.config.ts, /widget.js) and
 * /.well-known/security.txt (scripts/security_txt.ts). Used by npm start, npm test and
 * npm run build:web. Returns whether every part was built.
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { writeSecurityTxt } from "./security_txt.ts";

export function buildWeb(root: string): boolean {
  for (const config of ["web/vite.config.ts", "web/widget/vite.config.ts"]) {
    const built = spawnSync(process.execPath, [join(root, "node_modules/vite/bin/vite.js"), "build", "--config", config, "--logLevel", "error"], {
      cwd: root,
      stdio: "inherit",
    });
    if (built.status !== 0) return false;
  }
  writeSecurityTxt(join(root, "web", "dist"));
  return true;
}

if (process.argv[1]?.endsWith("build_web.ts")) {
  process.exit(buildWeb(process.cwd()) ? 0 : 1);
}
