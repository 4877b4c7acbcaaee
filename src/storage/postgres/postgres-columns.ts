/**
 * A row type's columns as a select list, from a record naming each of its fields once: a field the
 * record leaves out, or one the row type no longer has, fails the type-check.
 *
 * Named statements select these, never `*`: PostgreSQL plans a named statement once per
 * connection, and a migration adding a column to a table a `SELECT *` (or `RETURNING *`) reads
 * changes the statement's result type under the servers already running, so each pooled
 * connection failed its next call with "cached plan must not change result type" (a 503 each).
 */
export function columnList<Row>(columns: Record<keyof Row, true>): string {
  return Object.keys(columns).join(", ");
}
