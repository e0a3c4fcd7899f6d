# The native JPEG 2000 decoder: a small Node-API addon on Debian's libopenjp2
# (libopenjp2-7-dev to build, libopenjp2-7 to run). Built by scripts/build-native.mjs.
{
  "targets": [
    {
      "target_name": "openjp2",
      "sources": ["src/addon.cc", "src/decode.cc", "src/input_stream.cc"],
      "include_dirs": ["/usr/include/openjpeg-2.5", "../common"],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api"],
      "libraries": ["-lopenjp2"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
