#pragma once
// Throwaway certificates for tests of the TLS control channel (tls_test,
// peer_channel_test), made with the openssl CLI in a temp dir: EC P-256,
// valid 2 days.  A failing command is a gtest failure that names it.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdlib>
#include <string>

namespace slr::testing {

// mkdtemp(3) of PREFIX.XXXXXX; "" when it fails.
inline std::string makeTempDir(const std::string& prefix) {
  std::string tmpl = prefix + ".XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) return {};
  return tmpl;
}

// Runs `cmd` with its output discarded; it must exit 0.
inline void runQuiet(const std::string& cmd) {
  int rc = std::system((cmd + " >/dev/null 2>&1").c_str());
  ASSERT_EQ(rc, 0) << cmd;
}

inline const std::string kEcKey = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes ";

// DIR/NAME-ca.key and DIR/NAME-ca.pem: a self-signed CA, CN NAME-ca.
inline void makeCa(const std::string& dir, const std::string& name) {
  const std::string p = dir + "/" + name;
  runQuiet("openssl req -x509" + kEcKey + "-days 2 -subj /CN=" + name + "-ca -keyout " + p +
           "-ca.key -out " + p + "-ca.pem");
}

// DIR/FILE.key, DIR/FILE.csr and DIR/FILE.pem: CN `cn`, signed by the CA
// makeCa(dir, ca) made, with serial number `serial` (openssl syntax).
inline void makeLeaf(const std::string& dir, const std::string& file, const std::string& cn,
                     const std::string& ca, const std::string& serial) {
  const std::string f = dir + "/" + file, c = dir + "/" + ca;
  runQuiet("openssl req" + kEcKey + "-subj /CN=" + cn + " -keyout " + f + ".key -out " + f + ".csr");
  runQuiet("openssl x509 -req -days 2 -set_serial " + serial + " -in " + f + ".csr -CA " + c +
           "-ca.pem -CAkey " + c + "-ca.key -out " + f + ".pem");
}

}  // namespace slr::testing
