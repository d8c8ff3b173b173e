import type { QueryResult, QueryResultRow } from 'pg';

/**
 * How repositories reach PostgreSQL. `operation` names the call for error details and logs;
 * every failure arrives as a CallvaultError (see translateDbError).
 */
export interface Executor {
  query<R extends QueryResultRow = QueryResultRow>(
    operation: string,
    text: string,
    params?: readonly unknown[],
  ): Promise<QueryResult<R>>;
}

/** bigint and count(*) arrive as strings; every such value callvault stores fits a double exactly. */
export function toNumber(value: unknown): number {
  return typeof value === 'number' ? value : Number(value);
}

export function toNullableNumber(value: unknown): number | null {
  return value === null || value === undefined ? null : toNumber(value);
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Ids come from URLs; checking shape first turns a malformed one into "not found" rather than a SQL error. */
export function isUuid(value: string): boolean {
  return UUID.test(value);
}
