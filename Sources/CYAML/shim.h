// The system libyaml (Debian libyaml-dev, pkg-config yaml-0.1), exposed to Swift as module CYAML.
#include <yaml.h>
