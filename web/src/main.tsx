import "@mantine/core/styles.css";
import "@mantine/notifications/styles.css";
import { createTheme, MantineProvider } from "@mantine/core";
import { ModalsProvider } from "@mantine/modals";
import { Notifications } from "@mantine/notifications";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { createRoot } from "react-dom/client";
import { BrowserRouter } from "react-router";
import { App } from "./App.tsx";

// The console's design system: Mantine's components on one theme, light or dark as the person's
// system prefers (or as they choose; the choice is kept in this browser), and TanStack Query for
// every read (loading, errors, cache, invalidation after a write).
const theme = createTheme({
  primaryColor: "indigo",
  defaultRadius: "md",
  fontFamily: "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
  headings: { fontWeight: "650" },
});

const queries = new QueryClient({
  defaultOptions: {
    // A refused read is the database's answer: retrying it changes nothing.
    queries: { retry: false, staleTime: 5_000, refetchOnWindowFocus: false },
  },
});

createRoot(document.getElementById("root")!).render(
  <MantineProvider theme={theme} defaultColorScheme="auto">
    <QueryClientProvider client={queries}>
      <ModalsProvider>
        <Notifications position="top-right" />
        <BrowserRouter>
          <App />
        </BrowserRouter>
      </ModalsProvider>
    </QueryClientProvider>
  </MantineProvider>,
);
