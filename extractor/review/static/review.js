// Keyboard shortcuts of `extractor review serve`, for working through the queue of pending branches:
// j or ArrowRight: next branch; k or ArrowLeft: previous one; a: accept this branch (submits the accept
// form); r: to the reason field of the reject form. Keys typed into a field are left alone. Every action
// also exists as a plain link or button, so the pages work without this script.
"use strict";

(function () {
  function typing(target) {
    if (!(target instanceof Element)) {
      return false;
    }
    return target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT", "BUTTON"].indexOf(target.tagName) >= 0;
  }

  function follow(rel) {
    const link = document.querySelector('a[rel~="' + rel + '"]');
    if (link) {
      window.location.assign(link.href);
    }
  }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey || typing(event.target)) {
      return;
    }
    const accept = document.getElementById("accept-form");
    const reason = document.getElementById("reject-reason");
    switch (event.key) {
      case "j":
      case "ArrowRight":
        follow("next");
        break;
      case "k":
      case "ArrowLeft":
        follow("prev");
        break;
      case "a":
        if (!accept) {
          return;
        }
        accept.requestSubmit();
        break;
      case "r":
        if (!reason) {
          return;
        }
        reason.focus();
        break;
      default:
        return;
    }
    event.preventDefault();
  });
})();
