package engine

import (
	"reflect"
	"testing"
)

func TestPromQLMetricNames(t *testing.T) {
	cases := []struct {
		name, expr string
		want       []string
	}{
		{"plain selector", `kairos_engine_ready`, []string{"kairos_engine_ready"}},
		{"rate with matchers and a Grafana interval", `sum by (reason) (rate(kairos_engine_dead_letters_total{reason!="eval",instance=~"$instance"}[$__rate_interval]))`,
			[]string{"kairos_engine_dead_letters_total"}},
		{"histogram quantile", `histogram_quantile(0.99, sum by (le) (rate(kairos_engine_arrival_to_offer_seconds_bucket[5m])))`,
			[]string{"kairos_engine_arrival_to_offer_seconds_bucket"}},
		{"ratio with on and a number in exponent form", `sum(rate(kairos_state_cache_hits_total[5m])) / on() (sum(rate(kairos_state_cache_hits_total[5m])) + sum(rate(kairos_state_cache_misses_total[5m]))) * 1e2`,
			[]string{"kairos_state_cache_hits_total", "kairos_state_cache_misses_total"}},
		{"and, or, vector and offset", `(sum(increase(kairos_offers_total[30m])) or vector(0)) == 0 and sum(increase(kairos_engine_events_total[30m] offset 5m)) > 100`,
			[]string{"kairos_engine_events_total", "kairos_offers_total"}},
		{"string arguments", `label_replace(up{job="kairos"}, "x", "$1", "instance", "(.*):.*")`, []string{"up"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := promqlMetricNames(c.expr); !reflect.DeepEqual(got, c.want) {
				t.Errorf("promqlMetricNames(%s) = %v, want %v", c.expr, got, c.want)
			}
		})
	}
}
