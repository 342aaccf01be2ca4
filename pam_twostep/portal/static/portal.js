// Conveniences only: every page works without this file.
"use strict";
document.documentElement.classList.add("has-js");
document.addEventListener("click", function (event) {
  const button = event.target.closest("button");
  if (!button) return;
  if (button.dataset.copy !== undefined) {
    navigator.clipboard.writeText(button.dataset.copy).then(function () {
      button.textContent = "Copied";
    });
  } else if (button.dataset.print !== undefined) {
    window.print();
  } else if (button.dataset.download) {
    const source = document.getElementById(button.dataset.source);
    const lines = Array.from(source.querySelectorAll("li"), function (li) { return li.textContent; });
    const blob = new Blob([lines.join("\n") + "\n"], { type: "text/plain" });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = button.dataset.download;
    link.click();
    URL.revokeObjectURL(link.href);
  }
});
