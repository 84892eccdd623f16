// The console's small behaviours, here rather than in the templates so the
// Content-Security-Policy can forbid inline script (no on*= handlers, no hx-on).
(function () {
  "use strict";

  // × on a flash message removes it.
  document.addEventListener("click", function (event) {
    const close = event.target.closest(".alert-close");
    if (close && close.parentElement) close.parentElement.remove();
  });

  // Read-only fields meant for copying (source URIs, a new token) select on focus.
  document.addEventListener("focusin", function (event) {
    const field = event.target;
    if (field.matches && field.matches("input.copyable[readonly]")) field.select();
  });
  const autofocused = document.querySelector("input.copyable[readonly][autofocus]");
  if (autofocused) autofocused.select();

  // <form data-confirm="…"> asks before it is sent.
  document.addEventListener("submit", function (event) {
    const form = event.target.closest("form[data-confirm]");
    if (form && !window.confirm(form.dataset.confirm)) event.preventDefault();
  }, true);

  // Inside [data-swap-client-errors] a 4xx answer is a page fragment that explains the
  // refusal (a review that is no longer possible): show it instead of dropping it.
  document.addEventListener("htmx:beforeSwap", function (event) {
    const status = event.detail.xhr.status;
    if (status >= 400 && status < 500 && event.target.closest("[data-swap-client-errors]")) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
})();
