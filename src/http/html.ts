/**
 * Tiny HTML helpers for the viewer pages. Every identifier is a file name someone else chose,
 * so it goes through escapeHtml in text and attributes, and through encodeURIComponent in URLs.
 */
const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => ENTITIES[char]!);
}

export interface PageParts {
  title: string;
  /** Relative path from the page to the server root ('' for /, '../' for /viewer/x): works behind any prefix. */
  toRoot: string;
  /** Already-escaped markup for <body>. */
  body: string;
  bodyClass?: string;
  /** Already-escaped extra markup at the end of <body> (scripts). */
  scripts?: string;
}

export function page({ title, toRoot, body, bodyClass, scripts = '' }: PageParts): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)} · iiif-elastic</title>
<link rel="stylesheet" href="${toRoot}viewer-assets/viewer.css">
</head>
<body${bodyClass ? ` class="${bodyClass}"` : ''}>
<a class="skip" href="#main">Skip to content</a>
${body}
${scripts}
</body>
</html>
`;
}

/** An error as a small page, for the routes marked htmlErrors, linking back to the index. */
export function errorPage(status: number, message: string, url: string): string {
  // Relative, like every other link here: one "../" per folder level of the requested path.
  const depth = url.split('?')[0]!.split('/').length - 2;
  const toRoot = '../'.repeat(depth);
  return page({
    title: `Error ${status}`,
    toRoot,
    body: `<header><nav aria-label="Breadcrumb"><a href="${toRoot || './'}">All images</a></nav><h1>Error ${status}</h1></header>\n<main id="main"><p>${escapeHtml(message)}</p></main>`,
  });
}
