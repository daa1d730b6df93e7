{{ stratified_union() }}
