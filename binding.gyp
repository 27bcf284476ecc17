{
  "targets": [
    {
      "target_name": "densetorch",
      "sources": ["<!@(node scripts/native-config.js sources)"],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!@(node scripts/native-config.js include)"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_CPP_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "_GLIBCXX_USE_CXX11_ABI=1",
        "<!@(node scripts/native-config.js defines)"
      ],
      "cflags!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=c++17"],
      "cflags_cc": ["-std=c++20", "-fexceptions", "-frtti", "-O2", "-Wno-unused-parameter", "-Wno-deprecated-declarations"],
      "conditions": [
        ["OS=='linux'", {
          "cflags_cc": ["-fopenmp"],
          "ldflags": ["-fopenmp"],
          "libraries": [
            "-L<!(node scripts/native-config.js libdir)",
            "-Wl,-rpath-link,<!(node scripts/native-config.js libdir)",
            "-Wl,--no-as-needed",
            "<!@(node scripts/native-config.js libs)",
            "-Wl,--as-needed"
          ]
        }, {
          "libraries": [
            "-L<!(node scripts/native-config.js libdir)",
            "<!@(node scripts/native-config.js libs)"
          ]
        }]
      ],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++20"
      }
    }
  ]
}
