package v1

import (
	"math"
	"strconv"
)

// FormatPrice writes a price in US dollars the way the API's pricePerHour
// fields accept it: rounded to a nanodollar, without trailing zeros. Prices
// derived by arithmetic (per-core plus per-GiB, a reserved divisor) carry
// float noise such as 0.30000000000000004, which the fields' 12-decimal rule
// rejects; rounding to four decimals lost real digits of spot prices.
func FormatPrice(usd float64) string {
	return strconv.FormatFloat(math.Round(usd*1e9)/1e9, 'f', -1, 64)
}
