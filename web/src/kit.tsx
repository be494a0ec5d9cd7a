/**
 * The console's screen kit, on Mantine: a page header with its primary action, the states of a
 * query (skeleton while loading, the refusal with "Try again", an empty state), the outcome of an
 * action where the eye is (and as a toast), and what the signed-in person may do here (from
 * public.my_permissions, never from rules of the browser's own), and a table whose columns sort.
 */
import { Alert, Box, Button, Group, Paper, Skeleton, Stack, Table, Text, TextInput, Title, UnstyledButton } from "@mantine/core";
import { notifications } from "@mantine/notifications";
import { useMutation, useQueryClient, type QueryKey, type UseQueryResult } from "@tanstack/react-query";
import { useState, type ReactNode } from "react";
import { describeError, orgApi, type OrgApi } from "./api.ts";
import { useOrg } from "./ui.tsx";

/** The organization-scoped API of the screen's organization (api.ts). */
export function useOrgApi(): OrgApi {
  return orgApi(useOrg().id);
}

/** What the person may do in a project of this organization (my_permissions); nothing for a project they can't see. */
export function useProjectPermissions(projectId: string | null | undefined) {
  const org = useOrg();
  return org.permissions.projects.find((p) => p.id === projectId) ?? null;
}

/** The projects in which the person may do `what`. */
export function useProjectsWhere(what: "edit_agents" | "run_agents" | "review_widgets" | "manage_agents" | "manage_widgets" | "manage_schedules" | "manage_project"): string[] {
  return useOrg().permissions.projects.filter((p) => p[what]).map((p) => p.id);
}

/** A screen's title, what it is for, and its primary action. */
export function PageHeader({ title, description, action }: { title: string; description?: ReactNode; action?: ReactNode }) {
  return (
    <Group justify="space-between" align="flex-start" mb="lg" wrap="wrap" gap="sm">
      <Stack gap={4} style={{ flex: "1 1 20rem" }}>
        <Title order={1} fz={{ base: 24, sm: 30 }}>{title}</Title>
        {description && <Text c="dimmed" size="sm">{description}</Text>}
      </Stack>
      {action}
    </Group>
  );
}

/** A section of a screen, under its h2 (the page's h1 is the PageHeader). */
export function Section({ id, title, children }: { id: string; title: string; children: ReactNode }) {
  return (
    <Box component="section" aria-labelledby={id} mt="xl">
      <Title order={2} size="h3" id={id} mb="sm">{title}</Title>
      {children}
    </Box>
  );
}

/** A slug field (an organization's or a project's address): lowercase letters, digits and dashes. */
export function SlugInput({ label }: { label: string }) {
  return (
    <TextInput
      name="slug"
      label={label}
      description="Lowercase letters, digits and dashes"
      inputWrapperOrder={["label", "input", "description", "error"]}
      required
      maxLength={48}
      pattern="[a-z0-9][a-z0-9\-]*[a-z0-9]"
      title="lowercase letters, digits and dashes"
      autoComplete="off"
    />
  );
}

/** A query's states: a skeleton while it loads, its refusal with "Try again", an empty state, or its data. */
export function QueryState<T>({ query, empty, isEmpty, rows = 3, children }: {
  query: UseQueryResult<T>;
  empty: ReactNode;
  isEmpty?: (data: T) => boolean;
  rows?: number;
  children: (data: T) => ReactNode;
}) {
  if (query.isPending) {
    return (
      <Stack gap="xs" aria-busy="true" aria-label="Loading">
        {Array.from({ length: rows }, (_, i) => <Skeleton key={i} height={28} radius="sm" />)}
      </Stack>
    );
  }
  if (query.isError) {
    return (
      <Alert color="red" role="alert" title="This could not be loaded">
        <Group gap="sm">
          <Text size="sm">{describeError(query.error)}</Text>
          <Button size="xs" variant="light" color="red" onClick={() => void query.refetch()}>Try again</Button>
        </Group>
      </Alert>
    );
  }
  const data = query.data as T;
  const none = isEmpty ? isEmpty(data) : Array.isArray(data) && data.length === 0;
  if (none) {
    return (
      <Paper withBorder p="lg" radius="md">
        <Text c="dimmed" ta="center" size="sm">{empty}</Text>
      </Paper>
    );
  }
  return <>{children(data)}</>;
}

/** The outcome of the last action: a status (or the refusal, as an alert) where the action was taken. */
export function Outcome({ outcome }: { outcome: { ok: boolean; text: string } | null }) {
  if (!outcome) return null;
  return outcome.ok
    ? <Alert color="teal" role="status" mb="md">{outcome.text}</Alert>
    : <Alert color="red" role="alert" mb="md" title="Refused">{outcome.text}</Alert>;
}

/**
 * An action that changes something: runs `fn` (which answers what happened, in words), shows the
 * outcome where it was taken and as a toast, and invalidates the queries it changed.
 */
export function useAct(invalidates: QueryKey[] = []) {
  const client = useQueryClient();
  const [outcome, setOutcome] = useState<{ ok: boolean; text: string } | null>(null);
  const mutation = useMutation({
    mutationFn: (fn: () => Promise<string>) => fn(),
    onSuccess: (text) => {
      setOutcome({ ok: true, text });
      // The toast is for the eye; the outcome beside the action is what assistive technology announces
      // (one live region, so that the words aren't read, or matched by a test, twice).
      notifications.show({ color: "teal", message: text, role: "note", closeButtonProps: { "aria-label": "Dismiss" } });
      for (const key of invalidates) void client.invalidateQueries({ queryKey: key });
    },
    onError: (e) => {
      const text = describeError(e);
      setOutcome({ ok: false, text });
      notifications.show({ color: "red", title: "Refused", message: text, role: "note", closeButtonProps: { "aria-label": "Dismiss" } });
    },
  });
  return {
    outcome,
    busy: mutation.isPending,
    run: (fn: () => Promise<string>) => mutation.mutate(fn),
    clear: () => setOutcome(null),
  };
}

/** A column of a DataTable: its header, its cell, and (when sortable) the value it sorts by. */
export interface Column<T> {
  key: string;
  header: string;
  cell: (row: T) => ReactNode;
  /** The value the column sorts by; a column without one does not sort. */
  sort?: (row: T) => string | number | null | undefined;
}

/**
 * A table of rows with sortable columns: each sortable header is a button (keyboard-reachable)
 * and says its order with aria-sort; it scrolls sideways on a narrow screen instead of
 * overflowing the page.
 */
export function DataTable<T>({ label, columns, rows, rowKey, initialSort, minWidth = 560 }: {
  label: string;
  columns: Column<T>[];
  rows: T[];
  rowKey: (row: T) => string;
  initialSort?: { key: string; descending?: boolean };
  minWidth?: number;
}) {
  const [sort, setSort] = useState(initialSort ?? null);
  const column = sort ? columns.find((c) => c.key === sort.key) : undefined;
  const sorted = column?.sort
    ? [...rows].sort((a, b) => {
      const x = column.sort!(a) ?? "";
      const y = column.sort!(b) ?? "";
      const order = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y), undefined, { numeric: true });
      return sort!.descending ? -order : order;
    })
    : rows;
  return (
    // Native scrolling, focusable, so that a keyboard can scroll a table wider than a phone.
    <Table.ScrollContainer minWidth={minWidth} type="native" tabIndex={0}>
      <Table aria-label={label} highlightOnHover verticalSpacing="sm">
        <Table.Thead>
          <Table.Tr>
            {columns.map((c) => {
              const active = sort?.key === c.key;
              return (
                <Table.Th key={c.key} aria-sort={active ? (sort!.descending ? "descending" : "ascending") : undefined}>
                  {c.sort ? (
                    <UnstyledButton
                      onClick={() => setSort({ key: c.key, descending: active ? !sort!.descending : false })}
                      fw={600}
                      fz="sm"
                      aria-label={`${c.header}: sort ${active && !sort!.descending ? "descending" : "ascending"}`}
                    >
                      {c.header} <span aria-hidden="true">{active ? (sort!.descending ? "▼" : "▲") : "↕"}</span>
                    </UnstyledButton>
                  ) : c.header}
                </Table.Th>
              );
            })}
          </Table.Tr>
        </Table.Thead>
        <Table.Tbody>
          {sorted.map((row) => (
            <Table.Tr key={rowKey(row)}>
              {columns.map((c) => <Table.Td key={c.key}>{c.cell(row)}</Table.Td>)}
            </Table.Tr>
          ))}
        </Table.Tbody>
      </Table>
    </Table.ScrollContainer>
  );
}
