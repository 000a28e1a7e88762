SELECT region, round(sum(revenue), 2) AS revenue, sum(orders) AS orders
FROM revenue_by_country
GROUP BY region
