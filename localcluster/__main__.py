from localcluster.cluster import main

main()
