// Loaded first: every script error is kept and shown, so a broken page says so (and the
// headless-browser test can see it in the DOM).
window.gwErrors = [];
window.addEventListener("error", function (e) {
  window.gwErrors.push(String(e.message || e));
  var box = document.getElementById("gw-errors");
  if (box) { box.hidden = false; box.textContent = "script errors: " + window.gwErrors.join("; "); }
});
