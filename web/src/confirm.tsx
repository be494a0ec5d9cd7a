/**
 * Confirmation before a destructive action: a dialog that says what will happen, with Cancel
 * first (and focused), so that nothing changes by one click. For the irreversible ones (rotating
 * a key, terminating a workspace) the person types the name of what they are about to destroy.
 * Resolves true when they confirm, false when they cancel or close the dialog.
 */
import { Button, Group, Stack, Text, TextInput } from "@mantine/core";
import { modals } from "@mantine/modals";
import { useState, type ReactNode } from "react";

export interface Confirmation {
  /** The dialog's title, a question: "Rotate the widget key?" */
  title: string;
  /** What will happen, in words. */
  body: ReactNode;
  /** The confirm button's label: "Rotate the key". */
  confirmLabel: string;
  /** The name the person must type to confirm an irreversible action. */
  typeToConfirm?: string;
}

/** Asks for confirmation in a dialog; true when confirmed. */
export function confirmAction(c: Confirmation): Promise<boolean> {
  return new Promise((resolve) => {
    let settled = false;
    const settle = (value: boolean) => {
      if (settled) return;
      settled = true;
      resolve(value);
    };
    const id = modals.open({
      title: c.title,
      centered: true,
      onClose: () => settle(false),
      children: (
        <ConfirmBody
          confirmation={c}
          onCancel={() => {
            settle(false);
            modals.close(id);
          }}
          onConfirm={() => {
            settle(true);
            modals.close(id);
          }}
        />
      ),
    });
  });
}

function ConfirmBody({ confirmation: c, onCancel, onConfirm }: { confirmation: Confirmation; onCancel: () => void; onConfirm: () => void }) {
  const [typed, setTyped] = useState("");
  const ready = c.typeToConfirm === undefined || typed.trim() === c.typeToConfirm;
  return (
    <Stack role="group" aria-label={`Confirm: ${c.title}`}>
      <Text size="sm" component="div">{c.body}</Text>
      {c.typeToConfirm !== undefined && (
        <TextInput
          label={<>Type <strong>{c.typeToConfirm}</strong> to confirm</>}
          value={typed}
          onChange={(e) => setTyped(e.currentTarget.value)}
          autoComplete="off"
        />
      )}
      <Group justify="flex-end">
        <Button variant="default" onClick={onCancel} data-autofocus>Cancel</Button>
        <Button color="red" onClick={onConfirm} disabled={!ready}>{c.confirmLabel}</Button>
      </Group>
    </Stack>
  );
}
