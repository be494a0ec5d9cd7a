/** An expected failure of the local stack, reported to the user as one line without a stack trace. */
export class StackError extends Error {
  override name = "StackError";
}
