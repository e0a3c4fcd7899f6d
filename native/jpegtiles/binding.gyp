# The native JPEG tile renderer: a small Node-API addon on Debian's libjpeg-turbo
# (libjpeg62-turbo-dev to build, libjpeg62-turbo to run). Built by scripts/build-native.mjs.
{
  "targets": [
    {
      "target_name": "jpegtiles",
      "sources": ["src/addon.cc", "src/cut.cc", "src/render.cc"],
      "include_dirs": ["../common"],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api"],
      "libraries": ["-ljpeg"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
