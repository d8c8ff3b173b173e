import type { Executor } from './executor.js';
import type { Organisation } from './types.js';

interface OrganisationRow {
  id: string;
  name: string;
  created_at: Date;
}

function toOrganisation(row: OrganisationRow): Organisation {
  return { id: row.id, name: row.name, createdAt: row.created_at };
}

export interface OrganisationsRepository {
  /** Creates the organisation if missing (name defaults to the id); a given name replaces the stored one. */
  ensure(id: string, name?: string): Promise<Organisation>;
  get(id: string): Promise<Organisation | null>;
}

export function createOrganisationsRepository(db: Executor): OrganisationsRepository {
  return {
    async ensure(id, name) {
      const { rows } = await db.query<OrganisationRow>(
        'organisations.ensure',
        `INSERT INTO organisations (id, name) VALUES ($1, COALESCE($2, $1))
         ON CONFLICT (id) DO UPDATE SET name = COALESCE($2, organisations.name)
         RETURNING id, name, created_at`,
        [id, name ?? null],
      );
      return toOrganisation(rows[0]!);
    },

    async get(id) {
      const { rows } = await db.query<OrganisationRow>(
        'organisations.get',
        'SELECT id, name, created_at FROM organisations WHERE id = $1',
        [id],
      );
      return rows[0] ? toOrganisation(rows[0]) : null;
    },
  };
}
