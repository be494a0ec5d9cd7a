/**
 * A worker thread of the offline verifier (scripts/audit/verify_file.ts): checks the batches it is
 * given (scripts/audit/verify_batch.ts) with Node's SHA-256, and answers each with its result.
 */
import { parentPort } from "node:worker_threads";
import { useNodeSha256 } from "../node_sha256.ts";
import { type BatchJob, checkBatch } from "./verify_batch.ts";

useNodeSha256();
const port = parentPort!;
port.on("message", (job: BatchJob & { id: number }) => port.postMessage({ id: job.id, result: checkBatch(job) }));
port.postMessage("ready");
