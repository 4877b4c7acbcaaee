/** Narrowing helpers for Lua replies: ioredis types them as `unknown`. */

export function replyText(value: unknown): string {
  if (Buffer.isBuffer(value)) return value.toString("utf8");
  if (typeof value === "string") return value;
  throw new Error(`unexpected Redis reply ${String(value)}`);
}

export function replyBuffer(value: unknown): Buffer {
  if (Buffer.isBuffer(value)) return value;
  if (typeof value === "string") return Buffer.from(value, "utf8");
  throw new Error(`unexpected Redis reply ${String(value)}`);
}

export function replyNumber(value: unknown): number {
  if (typeof value === "number") return value;
  const parsed = Number(replyText(value));
  if (Number.isNaN(parsed)) throw new Error(`unexpected Redis reply ${String(value)}`);
  return parsed;
}

export function replyArray(value: unknown): unknown[] {
  if (Array.isArray(value)) return value;
  throw new Error(`unexpected Redis reply ${String(value)}`);
}
