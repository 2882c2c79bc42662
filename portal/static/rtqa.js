// rtqa pages: small helpers, no framework. Page-specific behaviour hangs off data- attributes.
"use strict";

/** The CSRF token of the signed-in page session (sent as X-CSRF-Token on fetch/XHR writes). */
function rtqaCsrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.getAttribute("content") : "";
}
