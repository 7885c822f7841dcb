// Copy buttons: the text of the <pre> a button names, to the clipboard. navigator.clipboard
// needs a secure context; a file:// page may not be one, so fall back to a selection.
document.querySelectorAll("button.copy").forEach(function (button) {
  button.addEventListener("click", function () {
    var pre = document.getElementById(button.dataset.target);
    if (!pre) return;
    var text = pre.textContent;
    var done = function () {
      button.textContent = "Copied";
      button.classList.add("done");
      setTimeout(function () { button.textContent = "Copy"; button.classList.remove("done"); }, 1500);
    };
    var fallback = function () {
      var range = document.createRange();
      range.selectNodeContents(pre);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      try { document.execCommand("copy"); done(); } catch (e) { /* the text stays selected */ }
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, fallback);
    } else {
      fallback();
    }
  });
});
document.documentElement.dataset.ready = "1";
