/**
 * The test-only egress allowance from a function's configuration. GATEHOUSE_EGRESS_TEST_ALLOWANCE
 * is set only by the stack launcher, never by tenant input: by the test runner (scripts/test.ts)
 * for the local provider and model servers of its throwaway stack (loopback endpoints and their
 * CA), and by `npm start` for its local model stand-in. check.ts refuses any endpoint that is not
 * a loopback address, so even a misconfiguration can't open a private network.
 */
import { z } from "zod";
import type { EgressTestAllowance } from "./check.ts";

const TestAllowance = z.strictObject({
  endpoints: z.array(z.string()).min(1),
  http: z.boolean().optional(),
  caCerts: z.array(z.string()).optional(),
});

/** The allowance GATEHOUSE_EGRESS_TEST_ALLOWANCE describes, or undefined; throws when it is malformed. */
export function testAllowanceFrom(get: (name: string) => string | undefined): EgressTestAllowance | undefined {
  const raw = get("GATEHOUSE_EGRESS_TEST_ALLOWANCE");
  return raw ? TestAllowance.parse(JSON.parse(raw)) : undefined;
}
