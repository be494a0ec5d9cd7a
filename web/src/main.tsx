import "@mantine/core/styles.css";
import "@mantine/notifications/styles.css";
import { type CSSVariablesResolver, createTheme, defaultVariantColorsResolver, MantineProvider, parseThemeColor, type VariantColorsResolver } from "@mantine/core";
import { ModalsProvider } from "@mantine/modals";
import { Notifications } from "@mantine/notifications";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { createRoot } from "react-dom/client";
import { BrowserRouter } from "react-router";
import { App } from "./App.tsx";

// The console's design system: Mantine's components on one theme, light or dark as the person's
// system prefers (or as they choose; the choice is kept in this browser), and TanStack Query for
// every read (loading, errors, cache, invalidation after a write).
// Text on the theme's colours meets WCAG AA (4.5:1) in both schemes: filled buttons and badges take
// shade 9, the "light" and "outline" variants' text shade 9 darkened (shade 3 in dark mode), dimmed text gray 7. (Orange
// and yellow don't reach it on white even then: the screens use neither for text.)
const variantColorResolver: VariantColorsResolver = (input) => {
  const colors = defaultVariantColorsResolver(input);
  if (input.variant !== "light" && input.variant !== "outline") return colors;
  const parsed = parseThemeColor({ color: input.color ?? input.theme.primaryColor, theme: input.theme });
  if (!parsed.isThemeColor) return colors;
  // Shade 9 mixed with a quarter of black: teal and green 9 alone miss 4.5:1 on their own tint.
  const text = `light-dark(color-mix(in srgb, var(--mantine-color-${parsed.color}-9) 75%, black), var(--mantine-color-${parsed.color}-3))`;
  return input.variant === "light"
    ? { ...colors, color: text, hoverColor: undefined }
    : { ...colors, color: text, border: `1px solid ${text}` };
};

const cssVariablesResolver: CSSVariablesResolver = () => ({
  variables: {},
  light: { "--mantine-color-dimmed": "var(--mantine-color-gray-7)" },
  dark: { "--mantine-color-dimmed": "var(--mantine-color-dark-1)" },
});

const theme = createTheme({
  primaryColor: "indigo",
  primaryShade: 9,
  defaultRadius: "md",
  fontFamily: "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
  headings: { fontWeight: "650" },
  variantColorResolver,
  // A toast's message in the text's own colour (its default, a dimmed one under a title, misses 4.5:1).
  components: { Notification: { styles: { description: { color: "var(--mantine-color-text)" } } } },
});

const queries = new QueryClient({
  defaultOptions: {
    // A refused read is the database's answer: retrying it changes nothing.
    queries: { retry: false, staleTime: 5_000, refetchOnWindowFocus: false },
  },
});

createRoot(document.getElementById("root")!).render(
  <MantineProvider theme={theme} defaultColorScheme="auto" cssVariablesResolver={cssVariablesResolver}>
    <QueryClientProvider client={queries}>
      <ModalsProvider modalProps={{ closeButtonProps: { "aria-label": "Close the dialog" } }}>
        <Notifications position="top-right" />
        <BrowserRouter>
          <App />
        </BrowserRouter>
      </ModalsProvider>
    </QueryClientProvider>
  </MantineProvider>,
);
