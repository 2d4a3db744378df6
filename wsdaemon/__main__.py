from wsdaemon.cli import main

main()
