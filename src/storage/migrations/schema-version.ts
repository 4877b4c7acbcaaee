/**
 * Refuses a database whose schema this build cannot serve: one a newer build migrated past the
 * versions this build knows (its tables may have changed under the queries here), or one not yet
 * migrated where the server was told not to migrate. Without the check, the first would be used
 * silently and the second would fail later as "a backend is unavailable".
 */
export class SchemaVersionMismatch extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SchemaVersionMismatch";
  }
}

/** Throws unless `applied` (the versions the database records) suits a build that knows `known`. */
export function requireServableSchema(
  applied: readonly number[],
  known: readonly { version: number }[],
  options: { migrated: boolean },
): void {
  const newestKnown = Math.max(0, ...known.map((migration) => migration.version));
  const newestApplied = Math.max(0, ...applied);
  if (newestApplied > newestKnown) {
    throw new SchemaVersionMismatch(
      `the database's schema is at version ${newestApplied}, newer than this build knows (${newestKnown}): run the build that migrated it`,
    );
  }
  if (!options.migrated) {
    const missing = known.filter((migration) => !applied.includes(migration.version));
    if (missing.length > 0) {
      throw new SchemaVersionMismatch(
        `the database's schema lacks migrations ${missing.map((migration) => migration.version).join(", ")}: run \`verifyd migrate\` or set VERIFYD_MIGRATE_ON_START=true`,
      );
    }
  }
}
