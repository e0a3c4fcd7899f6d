// Starts OpenSeadragon on the IIIF tile source named by the page (data-info). The URLs are
// relative to the page, so the viewer works behind any host and path prefix.
(function () {
  'use strict';
  var element = document.getElementById('viewer');
  if (!element) return;
  window.viewer = OpenSeadragon({
    element: element,
    prefixUrl: element.dataset.buttons,
    tileSources: new URL(element.dataset.info, document.baseURI).href,
    showNavigator: true,
    navigatorAutoFade: false,
    showRotationControl: true,
    crossOriginPolicy: 'Anonymous',
  });
})();
