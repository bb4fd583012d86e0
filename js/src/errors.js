/**
 * The one place the package's errors are made: node errors keep their code
 * (`quorum_not_reached`, `timeout`, `unavailable`, `storage_full`, `quota_exceeded`,
 * ...) and, when a consistency level was not reached, how many replicas answered. A
 * code this package does not know (from a newer node) arrives as `internal`, with the
 * node's message.
 * @module
 */

/** An error answered by a node, or raised by the client when no node answered. */
export class DhrtError extends Error {
  /**
   * @param {string} code the error's kind (see docs/protocol.md, "Errors")
   * @param {string} message what went wrong and what to do about it
   * @param {[number, number] | undefined} [acked] `[answered, required]` replicas
   */
  constructor(code, message, acked) {
    super(message);
    this.name = 'DhrtError';
    /** @type {string} */
    this.code = code;
    /** @type {[number, number] | undefined} */
    this.acked = acked;
  }
}

/**
 * The error an answer of kind `error` stands for.
 * @param {{code: string, message: string, acked?: [number, number]}} reply
 */
export function fromReply(reply) {
  return new DhrtError(reply.code, reply.message, reply.acked ?? undefined);
}
