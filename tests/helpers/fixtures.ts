/**
 * The ids supabase/seed.sql gives its demo data, named once for every TypeScript test
 * (supabase/tests/database/_helpers.psql names the same ones for the pgTAP suites).
 */

/** Acme Robotics: ada (tenant admin), victor (viewer), casey (contributor; project admin of its project). */
export const ACME = "0a000000-0000-4000-8000-00000000000a";
/** Globex Support: grace (tenant admin), mallory (viewer), casey (contributor; project admin of its project). */
export const GLOBEX = "0b000000-0000-4000-8000-00000000000b";
export const ACME_PROJECT = "1a000000-0000-4000-8000-00000000000a";
export const GLOBEX_PROJECT = "1b000000-0000-4000-8000-00000000000b";
export const ACME_AGENT = "2a000000-0000-4000-8000-00000000000a";
export const GLOBEX_AGENT = "2b000000-0000-4000-8000-00000000000b";
/** The scheduled run of each organization's agent. */
export const ACME_RUN = "4a000000-0000-4000-8000-00000000000a";
export const GLOBEX_RUN = "4b000000-0000-4000-8000-00000000000b";
/** Acme's Slack webhook connection, and Globex's GitHub one. */
export const ACME_CONNECTION = "6a000000-0000-4000-8000-00000000000a";
export const GLOBEX_CONNECTION = "6b000000-0000-4000-8000-00000000000b";
