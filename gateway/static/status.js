/* The status page (/status): fetch it again every 2 s and swap its main part in place.
 * The page is rendered by the gateway; this script only refreshes it. */
"use strict";

const REFRESH_MS = 2000;
const parser = new DOMParser();

async function refresh() {
  try {
    const answer = await fetch("/status", { headers: { Accept: "text/html" }, cache: "no-store" });
    if (answer.ok) {
      const fresh = parser.parseFromString(await answer.text(), "text/html").querySelector("#status");
      if (fresh) {
        document.querySelector("#status").replaceWith(document.adoptNode(fresh));
      }
    }
  } catch {
    /* The gateway is unreachable for now: keep the last status on screen and try again. */
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

setTimeout(refresh, REFRESH_MS);
