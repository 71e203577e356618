mod recipes;
