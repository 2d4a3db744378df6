from wsdaemon.daemon.cli import main

main()
