#!/usr/bin/env bash
# The whole loop over HTTP, timed, as a provider and a creator would drive it: a portal, an API token, a
# worker paired by code, a 3-frame Blender job and a 2-image upscale job, the worker running them, the
# results and the ledger read back. Needs `make install`, Debian's blender. Usage: bench/full_loop.sh [PORT]
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${1:-5055}
URL=http://127.0.0.1:$PORT
WORK=$(mktemp -d)
B=.venv/bin
export PICTOR_DATABASE_URL=sqlite:///$WORK/portal.sqlite3 PICTOR_STORAGE_DIR=$WORK/storage PICTOR_SECRET_KEY=loop
$B/pictor-portal init-db >/dev/null 2>&1
$B/pictor-portal create-user creator@example.com --password 'correct horse battery' >/dev/null
TOKEN=$($B/pictor-portal create-token creator@example.com)
$B/pictor-portal serve --host 127.0.0.1 --port "$PORT" > "$WORK/portal.log" 2>&1 &
PORTAL=$!
trap 'kill $PORTAL 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 1 60); do curl -sf "$URL/login" >/dev/null && break; sleep 0.5; done
H="Authorization: Bearer $TOKEN"
json() { $B/python -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

CODE=$(curl -sf -X POST -H "$H" -H 'Content-Type: application/json' -d '{"name":"Loop GPU"}' "$URL/api/v1/workers" \
       | json 'd["pairing_code"]')
$B/pictor-worker pair "$CODE" --server "$URL" --data-dir "$WORK/worker" --config "$WORK/worker/config.json"

blender -b --factory-startup --python-expr "
import bpy
s = bpy.context.scene; s.render.resolution_x = 320; s.render.resolution_y = 180; s.frame_end = 3
cube = bpy.data.objects['Cube']; cube.keyframe_insert('rotation_euler', frame=1)
cube.rotation_euler = (0.6, 0.4, 1.5); cube.keyframe_insert('rotation_euler', frame=3)
bpy.ops.wm.save_as_mainfile(filepath='$WORK/scene.blend')" >/dev/null 2>&1
$B/python -c "
from PIL import Image, ImageDraw
for i, colour in enumerate([(200, 60, 60), (60, 120, 220)]):
    im = Image.new('RGB', (96, 64), (240, 240, 240)); ImageDraw.Draw(im).ellipse((10, 8, 86, 56), fill=colour)
    im.save('$WORK/img%d.png' % i)"

curl -sf -H "$H" -F 'spec={"type":"render","name":"Cube turntable","frame_start":1,"frame_end":3,"frame_step":1,"chunk":1,"engine":"CYCLES","samples":16,"resolution_percent":100,"format":"PNG","device":"any","priority":0}' \
     -F blend=@"$WORK/scene.blend" "$URL/api/v1/jobs" | json '"render job", d["id"], len(d["tasks"]), "tasks"'
curl -sf -H "$H" -F 'spec={"type":"upscale","name":"Logo upscale","scale":2,"model":"realesr-animevideov3"}' \
     -F images=@"$WORK/img0.png" -F images=@"$WORK/img1.png" "$URL/api/v1/jobs" | json '"upscale job", d["id"], len(d["tasks"]), "tasks"'

SECONDS=0
for _ in 1 2 3 4 5 6; do  # --once: at most one task per run (the first run also benchmarks the worker)
  $B/pictor-worker run --headless --once --data-dir "$WORK/worker" --config "$WORK/worker/config.json" >> "$WORK/worker.log" 2>&1 || true
done
echo "worker: 5 tasks + first-run benchmark in ${SECONDS} s"
for JOB in 1 2; do
  curl -sf -H "$H" "$URL/api/v1/jobs/$JOB" \
    | json '"job", d["id"], d["status"], "cost", d["cost"], [o["name"] for t in d["tasks"] for o in t["outputs"]]'
done
curl -sf -H "$H" -o "$WORK/outputs.zip" "$URL/api/v1/jobs/1/outputs.zip"
$B/python -c "import zipfile; print('outputs.zip', zipfile.ZipFile('$WORK/outputs.zip').namelist())"
curl -sf -H "$H" "$URL/api/v1/workers" | json '[("worker", w["id"], w["status"], "earnings", w["earnings"], "bench", w["bench_score"]) for w in d["items"]]'
