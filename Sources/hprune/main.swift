// The hprune command line. Placeholder until the CLI lands.
print("hprune")
