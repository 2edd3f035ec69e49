// ANSI escape sequences in a task's log (colours from pytest, ls --color, loggers): SGR colours
// and bold become classes on spans; every other escape sequence (cursor moves, window titles)
// is dropped. The text stays text: nothing here builds HTML.
import type { ComponentChildren } from "preact";

const NAMES = ["black", "red", "green", "yellow", "blue", "magenta", "cyan", "white"];
// CSI (ESC [ params intermediates final), OSC (ESC ] ... BEL or ESC \), or a two-byte escape
const ESCAPE = /\x1b(?:\[([0-9;:?]*)[ -/]*([@-~])|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])/g;

interface Style { fg: string | null; bg: string | null; bold: boolean; underline: boolean }
const PLAIN: Style = { fg: null, bg: null, bold: false, underline: false };

function apply(style: Style, params: string): Style {
  const codes = params === "" ? [0] : params.split(/[;:]/).map((c) => (c === "" ? 0 : Number(c)));
  const s = { ...style };
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i];
    if (c === 0) Object.assign(s, PLAIN);
    else if (c === 1) s.bold = true;
    else if (c === 22) s.bold = false;
    else if (c === 4) s.underline = true;
    else if (c === 24) s.underline = false;
    else if (c >= 30 && c <= 37) s.fg = NAMES[c - 30];
    else if (c >= 90 && c <= 97) s.fg = `bright-${NAMES[c - 90]}`;
    else if (c === 39) s.fg = null;
    else if (c >= 40 && c <= 47) s.bg = NAMES[c - 40];
    else if (c >= 100 && c <= 107) s.bg = `bright-${NAMES[c - 100]}`;
    else if (c === 49) s.bg = null;
    else if (c === 38 || c === 48) i += codes[i + 1] === 5 ? 2 : codes[i + 1] === 2 ? 4 : 1; // 256/RGB colours: not shown
  }
  return s;
}

const classOf = (s: Style) => [s.fg && `ansi-${s.fg}`, s.bg && `ansi-bg-${s.bg}`, s.bold && "ansi-bold", s.underline && "ansi-underline"].filter(Boolean).join(" ");

/** ``text`` with its escape sequences rendered: plain runs stay strings (a log without any
 * escape is returned as it is), styled runs become spans. */
export function ansiText(text: string): ComponentChildren {
  if (!text.includes("\x1b")) return text;
  const out: ComponentChildren[] = [];
  let style = PLAIN;
  let last = 0;
  const push = (part: string) => {
    if (!part) return;
    const cls = classOf(style);
    out.push(cls ? <span class={cls}>{part}</span> : part);
  };
  for (const m of text.matchAll(ESCAPE)) {
    push(text.slice(last, m.index));
    last = (m.index ?? 0) + m[0].length;
    if (m[2] === "m") style = apply(style, m[1] ?? "");
  }
  push(text.slice(last));
  return out;
}
