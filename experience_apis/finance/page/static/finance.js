"use strict";
// Progressive enhancement only: every form works without this script.
document.documentElement.classList.add("js");

// Filters apply as soon as they change.
document.addEventListener("change", (event) => {
  const field = event.target;
  if (field.form && field.form.matches("form.filters") && field.tagName === "SELECT") {
    field.form.requestSubmit();
  }
});

// Actions (retry, resolve) are sent in the background and the page content swapped in
// place, keeping the scroll position; a second click cannot send the action twice.
document.addEventListener("submit", async (event) => {
  const form = event.target;
  if (!form.matches("form[data-enhance]")) return;
  event.preventDefault();
  const buttons = form.querySelectorAll("button");
  buttons.forEach((b) => { b.disabled = true; });
  try {
    const response = await fetch(form.action, {
      method: "POST",
      body: new URLSearchParams(new FormData(form)),
      credentials: "same-origin",
      redirect: "follow",
    });
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = page.querySelector("main");
    if (!fresh) throw new Error("unexpected answer");
    document.querySelector("main").replaceWith(fresh);
    if (response.redirected) history.replaceState(null, "", response.url);
    document.title = page.title;
  } catch (error) {
    form.submit();  // fall back to the plain form post
  }
});
