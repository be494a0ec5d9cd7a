/** A refusal, with the stable code the API answered (`forbidden`, `mfa_required`, …) and the HTTP status (0: none). */
export class ApiError extends Error {
  override name = "ApiError";
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}
