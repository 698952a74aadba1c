// Dark mode: the choice is kept in localStorage and applied as <html data-theme>
// (index.html applies it before the first paint).

import { useEffect, useState } from "preact/hooks";

export type Theme = "light" | "dark";
const KEY = "alfred-theme";

function saved(): Theme {
  try {
    return localStorage.getItem(KEY) === "dark" ? "dark" : "light";
  } catch {
    return "light";
  }
}

function apply(theme: Theme) {
  if (theme === "dark") document.documentElement.dataset.theme = "dark";
  else delete document.documentElement.dataset.theme;
}

function save(theme: Theme) {
  try {
    localStorage.setItem(KEY, theme);
  } catch {
    // Private mode without storage: the toggle still works for this page.
  }
}

export function useTheme(): [Theme, () => void] {
  const [theme, setTheme] = useState<Theme>(saved);
  useEffect(() => apply(theme), [theme]);
  // Applied and saved at once on a toggle, not in an effect (which runs after the next
  // paint): the page never shows the old theme after the click, and a reload or a
  // closed tab right after it keeps the choice.
  const toggle = () => {
    const next: Theme = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
    apply(next);
    save(next);
    setTheme(next);
  };
  return [theme, toggle];
}

/** A CSS custom property's value (charts read their colours from the theme). */
export function cssVar(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}
