// The console's only hand-written browser script (besides the audit check):
// the alert region htmx fills with an error is cleared by the next request,
// or by a click on it. No inline script, no eval: the CSP allows neither.
(function () {
  'use strict';
  const alerts = () => document.getElementById('alerts');
  document.addEventListener('htmx:beforeRequest', function (ev) {
    const el = alerts();
    // A live refresh (SSE, polling) must not wipe an error the person has not read.
    if (el && ev.detail && ev.detail.requestConfig && ev.detail.requestConfig.verb !== 'get') el.replaceChildren();
  });
  document.addEventListener('click', function (ev) {
    const el = alerts();
    if (el && ev.target instanceof Node && el.contains(ev.target)) el.replaceChildren();
  });
})();
