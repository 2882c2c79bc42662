// National view: changing a choice shows it at once. A new case has its own metrics, so the metric is dropped.
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("national-form");
  if (!form) return;
  document.getElementById("case").addEventListener("change", () => {
    document.getElementById("metric").disabled = true;
    form.submit();
  });
  for (const id of ["metric", "network"]) {
    document.getElementById(id).addEventListener("change", () => form.submit());
  }
});
