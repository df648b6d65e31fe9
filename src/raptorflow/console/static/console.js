// RaptorFlow console: small progressive enhancements. Every page works without this file.
(function () {
  "use strict";
  var root = document.documentElement;
  root.classList.add("js");
  var stored = null;
  try { stored = localStorage.getItem("rf-theme"); } catch (e) { stored = null; }
  if (stored === "dark" || stored === "light") { root.setAttribute("data-theme", stored); }

  function prefersDark() {
    return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  }

  document.addEventListener("DOMContentLoaded", function () {
    var toggle = document.querySelector("[data-theme-toggle]");
    if (toggle) {
      toggle.addEventListener("click", function () {
        var current = root.getAttribute("data-theme");
        var dark = current === "dark" || (current !== "light" && prefersDark());
        var next = dark ? "light" : "dark";
        root.setAttribute("data-theme", next);
        toggle.setAttribute("aria-pressed", String(next === "dark"));
        try { localStorage.setItem("rf-theme", next); } catch (e) { /* private mode */ }
      });
    }
    document.querySelectorAll("[data-select-on-focus]").forEach(function (input) {
      input.addEventListener("focus", function () { input.select(); });
    });
    document.querySelectorAll("button[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () {
        var source = document.querySelector(button.getAttribute("data-copy"));
        if (!source || !navigator.clipboard) { return; }
        navigator.clipboard.writeText(source.value).then(function () { button.textContent = "Copied"; });
      });
    });
    // Razorpay Checkout (billing page with an order to pay): its checkout.js, loaded by that page only,
    // opens the payment window; what it hands back is posted to our server, which verifies it.
    var pay = document.getElementById("rzp-pay");
    var verify = document.getElementById("rzp-verify");
    if (pay && verify) {
      pay.addEventListener("click", function () {
        if (typeof window.Razorpay !== "function") {
          pay.textContent = "Payment window unavailable (checkout.razorpay.com did not load)";
          return;
        }
        var d = pay.dataset;
        var checkout = new window.Razorpay({
          key: d.razorpayKey,
          order_id: d.razorpayOrder,
          amount: Number(d.amount),
          currency: d.currency,
          name: "RaptorFlow",
          description: d.description,
          prefill: { email: d.email, name: d.org },
          handler: function (result) {
            verify.elements.razorpay_order_id.value = result.razorpay_order_id;
            verify.elements.razorpay_payment_id.value = result.razorpay_payment_id;
            verify.elements.razorpay_signature.value = result.razorpay_signature;
            verify.submit();
          }
        });
        checkout.open();
      });
    }
  });
})();
