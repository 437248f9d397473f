// twostep: the WebAuthn ceremonies of the pages (R101, R103, R106), without a framework.
//
// A button with data-webauthn="create" or "get" and data-options (a URL) asks the server
// for options (a POST with the form's CSRF token), hands them to navigator.credentials,
// puts JSON.stringify(credential.toJSON()) in the form's "credential" field and submits
// the form (to the button's formaction, if it has one). A refusal is shown in the
// form's [data-status].
"use strict";

async function twostepOptions(url, form) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "X-CSRF-Token": form.elements.csrf_token.value },
  });
  if (!response.ok) {
    throw new Error(await response.text());
  }
  return response.json();
}

async function twostepCeremony(button) {
  const form = button.form;
  const status = form.querySelector("[data-status]");
  if (button.dataset.webauthn === "create" && !form.reportValidity()) {
    return;
  }
  try {
    const options = await twostepOptions(button.dataset.options, form);
    const credential =
      button.dataset.webauthn === "create"
        ? await navigator.credentials.create({
            publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options),
          })
        : await navigator.credentials.get({
            publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options),
          });
    form.elements.credential.value = JSON.stringify(credential.toJSON());
    if (button.hasAttribute("formaction")) {
      form.action = button.formAction;
    }
    form.submit();
  } catch (error) {
    if (status) {
      status.textContent = error.name === "Error" ? error.message : button.dataset.failed;
    }
  }
}

for (const button of document.querySelectorAll("button[data-webauthn]")) {
  if (!window.PublicKeyCredential || !PublicKeyCredential.parseRequestOptionsFromJSON) {
    button.disabled = true;
    continue;
  }
  button.addEventListener("click", (event) => {
    event.preventDefault();
    twostepCeremony(button);
  });
}
