package batchgen_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/kairos-engine/kairos/engine/batchgen"
)

// profile returns a realistic profile with a birthday and maybe a zone.
func benchProfile(birthday, zone string) map[string]any {
	p := map[string]any{
		"segment": "gold", "income": int64(5200), "city": "Madrid", "app_user": true,
		"opened_at": "2019-04-02T10:20:00Z", "score": 0.82, "language": "es", "kyc": "full",
	}
	if birthday != "" {
		p["birthday"] = birthday
	}
	if zone != "" {
		p["timezone"] = zone
	}
	return p
}

func BenchmarkBirthday(b *testing.B) {
	sh, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		b.Fatal(err)
	}
	runAt := time.Date(2026, 5, 17, 9, 0, 0, 0, sh)
	for _, bc := range []struct {
		name    string
		profile map[string]any
		match   bool
	}{
		{"no_birthday", benchProfile("", ""), false},
		{"another_day", benchProfile("1990-11-03", "Europe/Madrid"), false},
		{"near_day_customer_zone", benchProfile("1990-05-18", "Europe/Madrid"), false},
		{"match_job_zone", benchProfile("1990-05-17", ""), true},
		{"match_customer_zone", benchProfile("1990-05-17", "Europe/Madrid"), true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, ok, err := batchgen.Birthday(runAt, sh, 0, "C000123456", bc.profile)
				if ok != bc.match || err != nil {
					b.Fatalf("ok=%v err=%v", ok, err)
				}
			}
		})
	}
}

func BenchmarkAnniversary(b *testing.B) {
	runAt := time.Date(2026, 4, 2, 9, 0, 0, 0, time.UTC)
	p := benchProfile("", "")
	b.ReportAllocs()
	for b.Loop() {
		if _, ok, err := batchgen.Anniversary(runAt, time.UTC, "C000123456", p); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

func BenchmarkNewCustomer(b *testing.B) {
	runAt := time.Date(2026, 4, 2, 9, 0, 0, 0, time.UTC)
	p := benchProfile("", "")
	b.ReportAllocs()
	for b.Loop() {
		if _, ok, err := batchgen.NewCustomer(runAt, 7, "C000123456", p); ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

func BenchmarkDormant(b *testing.B) {
	runAt := time.Date(2026, 4, 2, 9, 0, 0, 0, time.UTC)
	seen := map[string]int64{"login": runAt.AddDate(0, 0, -3).UnixMilli(), "txn": runAt.AddDate(0, 0, -40).UnixMilli(), "profile": 0}
	types := []string{"login", "txn"}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok, err := batchgen.Dormant(runAt, time.UTC, 30, types, "C000123456", seen); ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

const benchRows = 10000

func BenchmarkReadList(b *testing.B) {
	var csvData, jsonData bytes.Buffer
	csvData.WriteString("customer_id,segment,offer_amount,rate,vip,branch,note\n")
	for i := range benchRows {
		fmt.Fprintf(&csvData, "C%07d,gold,%d,%.2f,%v,%04d,\n", i, 1000+i, float64(i%500)/100, i%2 == 0, i%1000)
		fmt.Fprintf(&jsonData, `{"customer_id":"C%07d","segment":"gold","offer_amount":%d,"rate":%.2f,"vip":%v,"branch":"%04d"}`+"\n", i, 1000+i, float64(i%500)/100, i%2 == 0, i%1000)
	}
	runAt := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	for _, bc := range []struct {
		format string
		data   []byte
	}{{"csv", csvData.Bytes()}, {"jsonl", jsonData.Bytes()}} {
		b.Run(bc.format, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.data)))
			iters := 0
			for b.Loop() {
				n, err := batchgen.ReadList(bytes.NewReader(bc.data), bc.format, "spring", runAt, func(batchgen.Event) error { return nil })
				if n != benchRows || err != nil {
					b.Fatal(n, err)
				}
				iters++
			}
			b.ReportMetric(float64(iters*benchRows)/b.Elapsed().Seconds(), "rows/s")
			b.ReportMetric(b.Elapsed().Seconds()*1e9/float64(iters*benchRows), "ns/row")
		})
	}
}
